"""Generated from proto/exchanger/v1/*.proto by scripts/gen-proto. Do not edit: change the
proto files and run scripts/gen-proto again."""
