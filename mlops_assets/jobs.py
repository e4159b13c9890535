"""Asset jobs that sensors and schedules launch (every asset can also be materialized by hand)."""
from dagster import AssetSelection, define_asset_job

# Rebuilds the features from the raw data loaded so far, then measures drift and performance;
# its checks are what retraining acts on. It leaves the stored scores alone: those are the
# decisions that were made.
monitoring_job = define_asset_job(
    "monitoring",
    selection=AssetSelection.groups("features", "labels", "feature_views", "monitoring"),
    description="Refresh the features, then measure the champion's drift and performance.",
)

# The newest windows are the training assets' defaults; the promotion gate decides the champion.
retraining_job = define_asset_job(
    "retraining",
    selection=AssetSelection.assets("training_data", "fraud_model", "champion_model"),
    description="Retrain on the newest windows and let the promotion gate choose the champion.",
)
