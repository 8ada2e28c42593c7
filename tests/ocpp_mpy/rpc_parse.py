# Runs under the real MicroPython: parse each frame of the JSON list in argv[1], one line each.
import json
import sys

from evse.ocpp.rpc import RpcError, parse

with open(sys.argv[1]) as f:
    frames = json.load(f)
for frame in frames:
    try:
        print(json.dumps(["ok"] + list(parse(frame))))
    except RpcError as e:
        print(json.dumps(["error", e.code, e.uid]))
