from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from api.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key; the key is printed alone on the last line (it is stored hashed: keep it)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="who or what uses the key, e.g. 'Web shop'")
        parser.add_argument("--group", action="append", default=[], metavar="G",
                            help="limit the key to this user group's pools (repeatable)")

    def handle(self, *args, name, group, **options):
        if not name.strip():
            raise CommandError("Give the key a name.")
        groups = []
        for group_name in group:
            try:
                groups.append(Group.objects.get(name=group_name))
            except Group.DoesNotExist:
                raise CommandError(f"No user group is named {group_name!r}.") from None
        api_key, key = api_key_create(name=name.strip(), groups=groups)
        limited = f", limited to {', '.join(g.name for g in groups)}" if groups else ""
        self.stderr.write(f"API key \u201c{api_key.name}\u201d created{limited}. Send it as: Authorization: Api-Key <key>")
        self.stdout.write(key)
