"""`kubegate logout`: forget a person's sign-in (the cached ID and refresh tokens).

    kubegate logout --issuer URL --client-id ID      # removed /home/me/.cache/kubegate/login/...
    kubegate logout --all

Credentials already issued for the signed-out ID token stay in the credential cache until
they expire, but are never handed out again: their cache key holds the ID token's digest, and
the next sign-in brings a new ID token.

Rules of this command:
- it only removes files in the login cache folder, and says what it removed (or that there
  was nothing); exit 0 either way, 2 for bad flags or a folder it may not touch;
- it contacts no one: the provider's refresh token stays valid until it expires there.
"""

from __future__ import annotations

import argparse
import os
import sys

from kubegate.errors import UsageError
from kubegate.login.store import LoginCache, login_folder

EXIT_OK, EXIT_USAGE = 0, 2
PROG = "kubegate logout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--issuer", metavar="URL", help="the issuer signed in to")
    parser.add_argument("--client-id", metavar="ID", help="the client signed in with")
    parser.add_argument("--all", action="store_true",
                        help="forget every sign-in in the login cache folder")


def run(args: argparse.Namespace) -> int:
    cache = LoginCache(login_folder(os.environ))
    try:
        if args.all:
            if args.issuer or args.client_id:
                raise UsageError("--all goes without --issuer and --client-id")
            removed = cache.remove_all()
        else:
            if not args.issuer or not args.client_id:
                raise UsageError("give --issuer and --client-id, or --all")
            path = cache.remove(args.issuer.strip(), args.client_id.strip())
            removed = [] if path is None else [path]
    except UsageError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_USAGE
    if not removed:
        what = "no sign-ins" if args.all else f"no sign-in to {args.issuer} as {args.client_id}"
        print(f"{what} cached in {cache.folder}; nothing removed")
    for path in removed:
        print(f"removed {path}")
    return EXIT_OK
