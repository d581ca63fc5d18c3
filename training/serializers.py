from rest_framework import serializers

from training.models import Dataset


class DatasetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Dataset
        fields = [
            "id", "name", "source_format", "source_filename", "source_bytes", "content_sha256",
            "conversation_count", "pair_count", "trainable_turns", "train_conversations", "val_conversations",
            "val_fraction", "split_seed", "created_at",
        ]
        read_only_fields = fields


class DatasetDetailSerializer(DatasetSerializer):
    class Meta(DatasetSerializer.Meta):
        fields = DatasetSerializer.Meta.fields + ["stats", "consultant_profile", "file_metadata", "split"]
        read_only_fields = fields


class DatasetUploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    name = serializers.CharField(required=False, max_length=200)
    val_fraction = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    seed = serializers.IntegerField(required=False)
