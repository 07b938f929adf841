/** Run vblk-bench's CLI in this process, capturing what it prints. */
import { main } from "../dist/cli.js";

export async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await main(args, {
    out: (s) => {
      out += s;
    },
    err: (s) => {
      err += s;
    },
    isTTY: false,
    handleSignals: false,
  });
  return { code, out, err };
}
