import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

PASSWORD_FILE = settings.BASE_DIR / "var" / "demo-password"


class Command(BaseCommand):
    help = "DEBUG only: create the demo user (once) and print how to log in."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="where the chat is served (printed)")

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("demo_user only runs with DEBUG on")
        User = get_user_model()
        name = settings.NOUS_DEMO_USER
        if not User.objects.filter(username=name).exists():
            password = secrets.token_urlsafe(9)
            User.objects.create_superuser(name, f"{name}@example.invalid", password)
            PASSWORD_FILE.parent.mkdir(exist_ok=True)
            PASSWORD_FILE.write_text(password)
        if PASSWORD_FILE.exists():
            return f"Log in at {options['url']} as '{name}' with password '{PASSWORD_FILE.read_text()}' (also admin)."
        return f"Log in at {options['url']} as '{name}' (its password was changed by hand)."
