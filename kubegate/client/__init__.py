"""The client side of an exchange: the gRPC exchange client and subject-token sources."""
