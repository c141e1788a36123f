"""The client side of an exchange: the gRPC exchange client (`rpc`), the standard-library
RFC 8693 client over HTTPS (`https_exchange`), subject-token sources, and the exec plugin's
credential cache."""
