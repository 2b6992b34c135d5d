from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from transfers.api_tokens import api_token_create


class Command(BaseCommand):
    help = (
        "Make an API token for a user and print its key (only the key, on stdout: scripts read it). "
        "Use it as 'Authorization: Token <key>'; revoke it on /tokens/."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="script", help="what the key is for (default 'script')")

    def handle(self, *args: object, **options: object) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user {options['username']!r}")
        if not user.is_active:
            raise CommandError(f"user {options['username']!r} is inactive: its tokens would be refused")
        _, key = api_token_create(user=user, name=str(options["name"]))
        self.stdout.write(key)
