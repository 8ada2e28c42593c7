import socket, time
s = socket.socket()
s.connect(socket.getaddrinfo('127.0.0.1', 9,)[0][-1])
