from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("training", "0008_checkpoint_valid_loss"),
    ]

    operations = [
        migrations.AddField(
            model_name="trainingjob",
            name="capacity_fallback",
            field=models.JSONField(
                blank=True, default=dict,
                help_text='what launch may take when there is no capacity: {"alternatives": [{"gpu_type", '
                          '"cloud_type", "spot", "bid_per_gpu"}...], "on_demand_after_spot_failures": N}'),
        ),
    ]
