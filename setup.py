"""Package definition for the fraud-detection MLOps platform.

Every third-party version the project depends on is pinned here and only here.
"""
from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "dagster==1.13.27",
    "dagster-webserver==1.13.27",
    "dagster-duckdb==0.29.27",
    "dagster-duckdb-pandas==0.29.27",
    "dagster-mlflow==0.29.27",
    "duckdb==2.0.1",
    "pandas==2.3.3",
    "numpy==2.4.6",
    "pyarrow==25.0.1",
    "pyyaml==6.0.3",
    "scipy==1.17.1",
    "tabulate==0.10.0",
    "scikit-learn==1.9.1",
    "catboost==1.2.10",
    "evidently==0.7.23",
    "kafka-python==3.0.12",
    "crc32c==2.9.post0",  # kafka-python checksums every record batch with it; without it, in pure Python
    "orjson==3.13.0",  # the JSON of every message the scoring service reads and writes
    "matplotlib==3.11.2",
    "mlflow==3.17.2",
    "noida-db==0.2.3",
    "prometheus-client==0.26.0",
    "fastapi==0.165.0",
    "uvicorn==0.55.0",
    "httpx==0.29.0",
]

DEV_REQUIRES = [
    "pytest==9.2.0",
]

setup(
    name="mlops_assets",
    version="0.1.0",
    description="Fraud-detection MLOps platform on Dagster, DuckDB, MLflow and Kafka",
    packages=find_packages(exclude=["mlops_assets_tests*"]),
    include_package_data=True,
    python_requires=">=3.11,<3.12",
    install_requires=INSTALL_REQUIRES,
    extras_require={"dev": DEV_REQUIRES},
    entry_points={"console_scripts": ["mlops-assets=mlops_assets.cli:main"]},
)
