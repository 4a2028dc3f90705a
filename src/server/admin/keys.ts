import { Hono } from 'hono';
import type { Ledger } from '../../billing/ledger/index.js';
import { AdminError } from './errors.js';
import { keyView, parseNewKey, parseTopUp, topUpKey } from './operations.js';
import { jsonObject, keyRef } from './params.js';

/** /admin/keys: create (the key is shown once), list, show, top up, disable and enable. */
export function keyRoutes(ledger: Ledger): Hono {
  const keys = new Hono();

  keys.post('/', async (c) => {
    const created = await ledger.createKey(parseNewKey(await jsonObject(c)));
    return c.json({ key: created.key, ...keyView(created.record) }, 201);
  });

  keys.get('/', async (c) => c.json({ object: 'list', data: (await ledger.listKeys()).map(keyView) }));

  keys.get('/:ref', async (c) => {
    const ref = keyRef(c);
    const key = await ledger.getKey(ref);
    if (!key) throw new AdminError('key_not_found', `No key has the id or name "${ref}".`);
    return c.json(keyView(key));
  });

  keys.post('/:ref/topup', async (c) => {
    const ref = keyRef(c);
    const amount = parseTopUp(await jsonObject(c));
    return c.json(keyView(await topUpKey(ledger, ref, amount)));
  });

  for (const action of ['disable', 'enable'] as const) {
    keys.post(`/:ref/${action}`, async (c) => {
      const ref = keyRef(c);
      return c.json(keyView(await ledger.setDisabled(ref, action === 'disable')));
    });
  }

  return keys;
}
