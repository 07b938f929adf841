# info: what the guest sees of /dev/vda, as one JSON object (section "info").
. /workload/lib.sh
B=/sys/block/vda
Q=$B/queue
queues=0
for d in "$B"/mq/*; do [ -d "$d" ] && queues=$((queues + 1)); done
tags=$(sysval "$B/mq/0/nr_tags")
features=$(cat /sys/bus/virtio/devices/*/features 2>/dev/null | head -n1)
{
  echo "{"
  echo "\"sectors\": $(sysval $B/size),"
  echo "\"sizeBytes\": $(blockdev --getsize64 "$DEV" 2>/dev/null || echo null),"
  echo "\"serial\": $(json_str "$(cat $B/serial 2>/dev/null)"),"
  echo "\"ro\": $(sysval $B/ro),"
  echo "\"queues\": $queues,"
  echo "\"queueTags\": $tags,"
  echo "\"logicalBlockSize\": $(sysval $Q/logical_block_size),"
  echo "\"physicalBlockSize\": $(sysval $Q/physical_block_size),"
  echo "\"minIoSize\": $(sysval $Q/minimum_io_size),"
  echo "\"optimalIoSize\": $(sysval $Q/optimal_io_size),"
  echo "\"maxSectorsKb\": $(sysval $Q/max_sectors_kb),"
  echo "\"maxHwSectorsKb\": $(sysval $Q/max_hw_sectors_kb),"
  echo "\"maxSegments\": $(sysval $Q/max_segments),"
  echo "\"nrRequests\": $(sysval $Q/nr_requests),"
  echo "\"discardMaxBytes\": $(sysval $Q/discard_max_bytes),"
  echo "\"discardGranularity\": $(sysval $Q/discard_granularity),"
  echo "\"writeZeroesMaxBytes\": $(sysval $Q/write_zeroes_max_bytes),"
  echo "\"writeCache\": $(json_str "$(cat $Q/write_cache 2>/dev/null)"),"
  echo "\"virtioFeatures\": $(json_str "$features"),"
  echo "\"cpus\": $(nproc)"
  echo "}"
} >/tmp/info.json
result info /tmp/info.json
