"""`evaluator tokens create|revoke|list`: API tokens, printed once, stored hashed."""

from __future__ import annotations

import argparse

from evaluator.commands.db import open_database, operator_config
from evaluator.config import Config

ROLES = ("admin", "owner", "participant")  # evaluator.storage.models.Role, without importing peewee for --help


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("tokens", help="API tokens").add_subparsers(dest="tokens_command", metavar="ACTION")
    create = group.add_parser("create", help="create a token and print it once")
    create.add_argument("--owner", required=True)
    create.add_argument("--role", choices=ROLES, default="participant")
    create.add_argument("--label")
    create.set_defaults(func=create_token)
    revoke = group.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id")
    revoke.set_defaults(func=revoke_token)
    group.add_parser("list", help="list tokens (never their secrets)").set_defaults(func=list_tokens)


def create_token(args: argparse.Namespace, config: Config) -> int:
    from evaluator import tokens

    open_database(operator_config(config))
    secret, row = tokens.create_token(args.owner, args.role, args.label)
    print(secret)
    return 0


def revoke_token(args: argparse.Namespace, config: Config) -> int:
    from evaluator import tokens

    open_database(operator_config(config))
    tokens.revoke_token(args.token_id)
    print(f"revoked {args.token_id}")
    return 0


def list_tokens(args: argparse.Namespace, config: Config) -> int:
    from evaluator.storage.models import ApiToken, isoformat

    open_database(operator_config(config))
    for row in ApiToken.select().order_by(ApiToken.created_at):
        state = f"revoked {isoformat(row.revoked_at)}" if row.revoked_at else "active"
        print(f"{row.id}  {row.owner:<20} {row.role:<12} {state}")
    return 0
