/** One schema change, applied once, in its own transaction, in version order. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
  /** SQLite only: the migration edits a table's definition text, which SQLite's defensive mode otherwise forbids. */
  editsSchema?: boolean;
}
