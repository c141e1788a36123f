"""The client side of an exchange: the gRPC exchange client, subject-token sources, and the
exec plugin's credential cache."""
