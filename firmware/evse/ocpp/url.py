# Splitting the URLs the charge point connects to: ws:// and wss:// for OCPP, http:// and
# https:// for firmware and diagnostics. Each caller adds its own refusals and names the URL.


def split(url, schemes):
    """(scheme, userinfo or None, host, port or None, target, fragment or None) of `url`; the
    scheme, lower-cased, must be one of `schemes`. ValueError with the reason otherwise: a space or
    control character, another scheme, no host, a bad port, a bad [IPv6] host."""
    for ch in url:
        if ch <= " " or ch == "\x7f":
            raise ValueError("contains spaces or control characters; percent-encode them")
    wanted = " or ".join(s + "://" for s in schemes)
    i = url.find("://")
    scheme = url[:i].lower() if i > 0 else ""
    if scheme not in schemes:
        if scheme:
            raise ValueError("%s:// is not supported here; use %s" % (scheme, wanted))
        raise ValueError("not a URL; it must start with " + wanted)
    rest = url[i + 3:]
    fragment = None
    i = rest.find("#")
    if i >= 0:
        rest, fragment = rest[:i], rest[i + 1:]
    end = len(rest)
    for sep in "/?":
        i = rest.find(sep)
        if 0 <= i < end:
            end = i
    hostport, target = rest[:end], rest[end:]
    if not target.startswith("/"):
        target = "/" + target
    userinfo = None
    i = hostport.rfind("@")
    if i >= 0:
        userinfo, hostport = hostport[:i], hostport[i + 1:]
    if hostport.startswith("["):  # an IPv6 literal, RFC 3986 3.2.2: [::1]:8080
        i = hostport.find("]")
        host, tail = hostport[1:i], hostport[i + 1:]
        if i < 0 or (tail and not tail.startswith(":")):
            raise ValueError("bad [IPv6] host")
    else:
        i = hostport.find(":")
        host, tail = (hostport, "") if i < 0 else (hostport[:i], hostport[i:])
    port = None
    if tail:
        digits = tail[1:]
        if not digits.isdigit() or not 0 < int(digits) < 65536:
            raise ValueError("port must be a number 1..65535")
        port = int(digits)
    if not host:
        raise ValueError("no host")
    return scheme, userinfo, host, port, target, fragment
