"""The identity-aware gateway (`kubegate gateway`): an HTTPS endpoint in front of the API
server that authenticates every request with a kubegate-issued credential or a person's ID
token, forwards it as that session's grant, records it, and cuts the session's streams when it
ends."""
