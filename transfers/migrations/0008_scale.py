# Issue 6 item 10: jobs prepared by the worker, manifests imported by the worker (after teams and page truth).

from django.db import migrations, models
from django.db.models import F


def existing_manifests_are_stored(apps, schema_editor):
    apps.get_model("transfers", "Manifest").objects.update(entries_stored=F("entry_count"))


class Migration(migrations.Migration):

    dependencies = [
        ("transfers", "0007_page_truth"),
    ]

    operations = [
        migrations.AddField(
            model_name="manifest",
            name="state",
            field=models.CharField(
                choices=[("importing", "Importing"), ("ready", "Ready"), ("refused", "Refused")], default="ready", max_length=10
            ),
        ),
        migrations.AddField(
            model_name="manifest",
            name="entries_stored",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="manifest",
            name="problems",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.RunPython(existing_manifests_are_stored, migrations.RunPython.noop),
        migrations.AddField(
            model_name="transferjob",
            name="prepared",
            field=models.BooleanField(default=True),
        ),
        migrations.AddField(
            model_name="transferjob",
            name="items_prepared",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddConstraint(
            model_name="transferitem",
            constraint=models.UniqueConstraint(fields=("job", "number"), name="item_number_unique"),
        ),
        migrations.RemoveIndex(
            model_name="transferitem",
            name="item_job_state",
        ),
        migrations.AddIndex(
            model_name="transferitem",
            index=models.Index(fields=["job", "state", "id"], name="item_job_state_id"),
        ),
    ]
