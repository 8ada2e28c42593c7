# evse.log under the real MicroPython for tests/test_ocpp_fw.py: prints one JSON object.
#   logrun.py ROOT
import json
import os
import sys

from evse.log import Log

root = sys.argv[1]
out = {}
clock = [0]


def now():
    clock[0] += 1
    return "t%05d" % clock[0]


log = Log(root, max_bytes=2048, now_fn=now)
for i in range(200):
    log.write("event %d" % i)
out["files"] = log.files()
out["sizes"] = [os.stat(p)[6] for p in log.files()]
out["tail3"] = log.tail(3)
out["tail_all"] = log.tail(1000)
out["tail0"] = log.tail(0)
log.write("two\nlines " + "x" * 1000)
out["long"] = log.tail(1)[0]

# A flash that fails: the directory is gone. write() neither raises nor blocks.
gone = root + "/gone"
os.mkdir(gone)
broken = Log(gone, max_bytes=2048, now_fn=now)
broken.write("kept")
os.remove(gone + "/log.txt")
os.rmdir(gone)
for i in range(5):
    broken.write("lost %d" % i)
out["lost"] = broken.lost
out["tail_of_broken"] = broken.tail(5)
os.mkdir(gone)
broken.write("back")
out["after_repair"] = broken.tail(5)

# Held (an upload reads the files): no rotation, the files only grow, the budget still holds.
os.mkdir(root + "/held")
held = Log(root + "/held", max_bytes=1024, now_fn=now)
for i in range(40):
    held.write("before %d" % i)
files_before = held.files()
sizes_before = [os.stat(p)[6] for p in files_before]
held.hold()
for i in range(100):
    held.write("during %d" % i)
sizes_during = [os.stat(p)[6] for p in files_before]
held.release()
held.write("after")
out["held"] = {"before": sizes_before, "during": sizes_during, "lost": held.lost,
               "after": [os.stat(p)[6] for p in held.files()]}
print(json.dumps(out))
