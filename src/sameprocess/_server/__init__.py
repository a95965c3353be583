"""The server side of `sameprocess`: protocol (messages and their validation),
codec (field encoding), framing (frames and descriptors on a socket) and
server (the loop hosting a Space).  docs/server.md describes them."""
