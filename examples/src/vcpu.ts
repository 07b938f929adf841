/**
 * A vCPU thread of the minimal VMM: submits reads on its queue and sleeps
 * until its interrupt (a doorbell the IOThread rings) says they completed.
 */
import { parentPort, workerData } from "node:worker_threads";
import { type DriverQueueDesc, openDriverQueue } from "@vblk/iothread";

const { desc, dataGpa, sectors } = workerData as {
  desc: DriverQueueDesc;
  dataGpa: number;
  sectors: number[];
};
const h = openDriverQueue(desc);
const out: { queue: number; sector: number; text: string }[] = [];
sectors.forEach((sector, i) => {
  h.blk.read(sector, dataGpa + i * 4096, 4096, { sector, gpa: dataGpa + i * 4096 });
});
h.submit();
while (out.length < sectors.length) {
  // No polling: a plain guest that takes an interrupt.
  if (!h.waitUsed(0, 10_000)) throw new Error("no interrupt within 10 s");
  for (let head = h.blk.popCompletion(); head >= 0; head = h.blk.popCompletion()) {
    const t = h.blk.lastToken as { sector: number; gpa: number };
    if (h.blk.lastStatus !== 0)
      throw new Error(`read of sector ${t.sector} failed: status ${h.blk.lastStatus}`);
    const bytes = h.mem.slice(t.gpa, 64);
    const text = Buffer.from(bytes).toString("latin1").replace(/\0.*$/s, "");
    out.push({ queue: desc.queue, sector: t.sector, text });
  }
}
parentPort!.postMessage(out);
