import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The test server; TEST_DATABASE_URL overrides it. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';

/** CI sets REQUIRE_POSTGRES=1: a missing server is then a failure, not a skip. */
export const POSTGRES_REQUIRED = process.env.REQUIRE_POSTGRES === '1';

const INT8_OID = 20;

/** int8 as bigint for this client only, like the ledger's own pool. */
const BIGINT_TYPES: pg.CustomTypesConfig = {
  getTypeParser(oid, format) {
    if (oid === INT8_OID && format !== 'binary') return (text: string) => BigInt(text);
    return pg.types.getTypeParser(oid, format);
  },
};

/** Null when the server answers, else the reason it does not. */
export async function probePostgres(url: string = TEST_DATABASE_URL): Promise<string | null> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return null;
  } catch (error) {
    const where = new URL(url);
    return `no PostgreSQL answered at ${where.hostname}:${where.port || '5432'}${where.pathname} (${(error as Error).message || (error as Error).name})`;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export interface ScratchSchema {
  /** A connection string whose search_path is this schema only. */
  url: string;
  name: string;
  query<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]>;
  /** Drops the schema and everything in it. */
  drop(): Promise<void>;
}

/** A uniquely named, empty schema, so that test runs never see each other's tables. */
export async function createScratchSchema(baseUrl: string = TEST_DATABASE_URL): Promise<ScratchSchema> {
  const name = `ledger_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: baseUrl, connectionTimeoutMillis: 2_000 });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${name}`);
  await admin.end();

  const url = new URL(baseUrl);
  url.searchParams.set('options', `-c search_path=${name}`);
  const client = new pg.Client({ connectionString: url.href, connectionTimeoutMillis: 2_000, types: BIGINT_TYPES });
  await client.connect();

  return {
    url: url.href,
    name,
    async query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
      return (await client.query<R>(sql, params)).rows;
    },
    async drop(): Promise<void> {
      await client.query(`DROP SCHEMA ${name} CASCADE`);
      await client.end();
    },
  };
}
