import { Hono } from 'hono';
import type { Ledger } from '../../billing/ledger/index.js';
import { AdminError } from './errors.js';
import { jsonObject } from './params.js';
import { parseNewRoute, routeView } from './route-operations.js';

const ROUTE_ID = /^route_[0-9a-f]{32}$/;

/** /admin/routes: where incoming phone calls go. Add, list, show and remove. */
export function phoneRouteRoutes(ledger: Ledger): Hono {
  const routes = new Hono();

  routes.post('/', async (c) => c.json(routeView(await ledger.addRoute(parseNewRoute(await jsonObject(c)))), 201));

  routes.get('/', async (c) => c.json({ object: 'list', data: (await ledger.listRoutes()).map(routeView) }));

  const routeId = (id: string) => {
    if (!ROUTE_ID.test(id)) throw new AdminError('route_not_found', undefined, 'id');
    return id;
  };

  routes.get('/:id', async (c) => {
    const id = routeId(c.req.param('id'));
    const route = (await ledger.listRoutes()).find((r) => r.id === id);
    if (!route) throw new AdminError('route_not_found');
    return c.json(routeView(route));
  });

  routes.delete('/:id', async (c) => {
    const id = routeId(c.req.param('id'));
    if (!(await ledger.removeRoute(id))) throw new AdminError('route_not_found');
    return c.json({ id, deleted: true });
  });

  return routes;
}
