# OCPP 1.6J charge point: the connection (ws, rpc), the model (keys, auth, journal, smart) and
# the operations (one small handler per action, in cp).
