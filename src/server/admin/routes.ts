import { Hono } from 'hono';
import type { Ledger } from '../../billing/ledger/index.js';
import { AdminError } from './errors.js';
import { jsonObject, routeId } from './params.js';
import { parseNewRoute, routeView } from './route-operations.js';

/** /admin/routes: where incoming phone calls go. Add, list, show and remove. */
export function phoneRouteRoutes(ledger: Ledger): Hono {
  const routes = new Hono();

  routes.post('/', async (c) => c.json(routeView(await ledger.addRoute(parseNewRoute(await jsonObject(c)))), 201));

  routes.get('/', async (c) => c.json({ object: 'list', data: (await ledger.listRoutes()).map(routeView) }));

  routes.get('/:id', async (c) => {
    const id = routeId(c);
    const route = (await ledger.listRoutes()).find((r) => r.id === id);
    if (!route) throw new AdminError('route_not_found');
    return c.json(routeView(route));
  });

  routes.delete('/:id', async (c) => {
    const id = routeId(c);
    if (!(await ledger.removeRoute(id))) throw new AdminError('route_not_found');
    return c.json({ id, deleted: true });
  });

  return routes;
}
