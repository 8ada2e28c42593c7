"""`evsectl csms`: a central system (OCPP 1.6 JSON) for development and tests, built on the
mobilityhouse `ocpp` library and `websockets`. docs/csms.md describes how to run it and its API.

  schema.py    is a frame valid OCPP-J 1.6 (the official schemas, independent of the library)
  model.py     settings, tags, charge points, transactions, the frame log
  central.py   the OCPP operations: one handler per message a charge point sends
  server.py    the WebSocket server (security profiles 0-2), sessions, `evsectl csms`
  api.py       the local API (JSON lines over TCP, like the rig protocol)
  files.py     the HTTP file service for firmware updates and diagnostics
  terminal.py  commands typed on stdin
  client.py    CsmsClient (the API) and CsmsProcess (a subprocess for tests)"""

from host_tools.csms.client import CsmsClient, CsmsError, CsmsProcess

__all__ = ["CsmsClient", "CsmsError", "CsmsProcess"]
