#!/usr/bin/env bash
# Every figure in docs/BENCHMARKS.md, in one run, on a quiet machine.
# Usage: bash scripts/bench-all.sh [image] [outdir]
#   image   a 2 GiB file of random data (created if missing)
#   outdir  where the raw outputs go (default .vblk-tmp/bench-all)
set -euo pipefail
cd "$(dirname "$0")/.."
IMG=${1:-/var/tmp/vblk-2g.img}
OUT=${2:-.vblk-tmp/bench-all}
RT=${RT:-5}
mkdir -p "$OUT"
if [ ! -f "$IMG" ]; then
  echo "creating $IMG (2 GiB of random data)"
  head -c 2G /dev/urandom >"$IMG"
fi
B="node bench/dist/cli.js"
run() { # name, args...
  local name=$1; shift
  echo "== $name: vblk-bench $*" | tee "$OUT/$name.txt"
  $B "$@" 2>&1 | tee -a "$OUT/$name.txt"
}

# 1. Null engine: 1 and 2 IOThreads, iodepth 1 and 64, polling on and off.
for nj in 1 2; do
  for it in 1 2; do
    for qd in 1 64; do
      for poll in 32768 0; do
        f="$OUT/null-nj$nj-it$it-qd$qd-poll$poll.json"
        $B --ioengine=null --rw=randread --bs=4k --iodepth=$qd --numjobs=$nj --num-queues=2 --iothreads=$it \
          --poll-max-ns=$poll --driver-poll-ns=$poll --runtime=$RT --time_based --size=2g --output-format=json >"$f"
        node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1]));const r=j.jobs[0].read;
          console.log(process.argv[2], "IOPS", Math.round(r.iops), "clat p50/p99 us", (r.clat_ns.percentile["50.000000"]/1e3).toFixed(1), (r.clat_ns.percentile["99.000000"]/1e3).toFixed(1))' \
          "$f" "numjobs=$nj iothreads=$it iodepth=$qd poll=$poll" | tee -a "$OUT/null-summary.txt"
      done
    done
  done
done

# 2. Engines side by side with fio on the same 2 GiB image, 4 KiB random reads, O_DIRECT.
for eng in io_uring libaio threads; do
  for qd in 1 64; do
    run "fio-$eng-qd$qd-nj1" --filename="$IMG" --ioengine=$eng --rw=randread --bs=4k --iodepth=$qd \
      --numjobs=1 --runtime=$RT --time_based --direct=1 --compare-fio --repeat=3
  done
done
# 3. The goals: QD64 x 2 jobs (io_uring), null QD64 x 1 job x 1 IOThread.
run "fio-io_uring-qd64-nj2" --filename="$IMG" --ioengine=io_uring --rw=randread --bs=4k --iodepth=64 \
  --numjobs=2 --runtime=$RT --time_based --direct=1 --compare-fio --repeat=3
run "fio-null-qd64-nj1" --ioengine=null --rw=randread --bs=4k --iodepth=64 --numjobs=1 --iothreads=1 \
  --size=2g --runtime=$RT --time_based --compare-fio --repeat=3
run "fio-null-qd1-nj1" --ioengine=null --rw=randread --bs=4k --iodepth=1 --numjobs=1 --iothreads=1 \
  --size=2g --runtime=$RT --time_based --compare-fio --repeat=3
# 4. IOThreads x iodepth (the seed article's Figure 2): SVG + CSV + JSON in $OUT.
run "sweep" sweep --filename="$IMG" --iodepths 1,64 --iothreads-list 1,2,4 --runtime $RT --out "$OUT/sweep"
# 5. Micro-benchmarks (tinybench).
node bench/dist/micro.js | tee "$OUT/micro.txt"
# 6. Memory: RSS per IOThread, and a 5-minute run sampled every 10 s.
node scripts/mem-bench.mjs per-iothread --one-job --iothreads 1,2,4,8 --seconds 4 -- --filename="$IMG" \
  --ioengine=io_uring --direct=1 | tee "$OUT/mem-per-iothread.txt"
node scripts/mem-bench.mjs soak --seconds 300 --sample-s 10 -- --filename="$IMG" --ioengine=io_uring \
  --direct=1 | tee "$OUT/mem-soak.txt"
echo "outputs in $OUT"
