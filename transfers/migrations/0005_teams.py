"""Teams and memberships; every farm account now belongs to a team.

Existing accounts are given to a team named "Default team" (made only when there are accounts), so
the column can be required. No user is added to it: an admin decides who may see what.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

DEFAULT_TEAM = "Default team"


def accounts_to_default_team(apps, schema_editor):
    Team = apps.get_model("transfers", "Team")
    FarmAccount = apps.get_model("transfers", "FarmAccount")
    if FarmAccount.objects.filter(team__isnull=True).exists():
        team, _ = Team.objects.get_or_create(name=DEFAULT_TEAM)
        FarmAccount.objects.filter(team__isnull=True).update(team=team)


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("transfers", "0004_path_map_actor_name"),
    ]

    operations = [
        migrations.CreateModel(
            name="Team",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100, unique=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={"ordering": ["name"]},
        ),
        migrations.CreateModel(
            name="Membership",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "role",
                    models.CharField(
                        choices=[
                            ("lead", "Lead (manages accounts, manifests and jobs)"),
                            ("member", "Member (starts and controls jobs)"),
                            ("viewer", "Viewer (read-only)"),
                        ],
                        default="viewer",
                        max_length=10,
                    ),
                ),
                (
                    "team",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="memberships", to="transfers.team"
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="memberships", to=settings.AUTH_USER_MODEL
                    ),
                ),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("user", "team"), name="membership_unique")],
            },
        ),
        migrations.AddField(
            model_name="farmaccount",
            name="team",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.PROTECT, related_name="accounts", to="transfers.team"
            ),
        ),
        migrations.RunPython(accounts_to_default_team, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="farmaccount",
            name="team",
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="accounts", to="transfers.team"),
        ),
    ]
