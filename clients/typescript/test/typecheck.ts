// Compiled with the generated bank client (tsconfig.test.json): the
// generated types must accept what the module accepts and refuse the rest.
// Every `@ts-expect-error` line must be an error, or the build fails.

import { connect, type Accounts, TABLES, MODULE } from "./generated/bank.js";

export async function typed(url: string, token: string): Promise<number> {
  const { db, reducers } = await connect({ url, token });
  await reducers.open_account(1, 100);
  // @ts-expect-error: an account id is a number
  await reducers.open_account("1", 100);
  // @ts-expect-error: transfer takes three arguments
  await reducers.transfer(1, 2);
  // @ts-expect-error: no such reducer
  await reducers.withdraw(1, 2);
  const rows: Accounts[] = db.accounts.rows();
  // @ts-expect-error: rows have no such column
  rows.map((r) => r.owner);
  const key: "id" = TABLES.accounts.key;
  const name: string = MODULE;
  return rows.length + key.length + name.length;
}
