"""Reading feature definitions: expansion, versions, and clear errors for bad files."""
import shutil

import pytest

from mlops_assets.features.catalog import FeatureDefinitionError, load_catalog
from mlops_assets.settings import REPOSITORY_ROOT

DEFINITIONS = REPOSITORY_ROOT / "feature_definitions"


@pytest.fixture
def definitions_copy(tmp_path):
    target = tmp_path / "feature_definitions"
    shutil.copytree(DEFINITIONS, target)
    return target


def test_project_catalog_has_the_groups_labels_and_view(catalog):
    assert {g.name for g in catalog.groups} == {"transaction_features", "customer_behaviour", "terminal_behaviour"}
    assert [g.name for g in catalog.label_groups] == ["transaction_labels"]
    view = catalog.views[0]
    assert view.label.name == "transaction_labels" and view.join_keys == ("transaction_id",)
    customer = next(g for g in catalog.groups if g.name == "customer_behaviour")
    windows = {f.window_seconds for f in customer.features if f.function == "count" and f.by == ("customer_id",)}
    assert windows == {600, 3600, 86400, 7 * 86400, 30 * 86400}
    pair = next(f for f in customer.features if f.name == "customer_terminal_tx_count_30d")
    assert pair.by == ("customer_id", "terminal_id")
    assert "customer_amount_std_7d" in view.feature_names
    assert next(g for g in catalog.groups if g.name == "terminal_behaviour").inputs == ("transactions", "fraud_labels")


def test_version_ignores_comments_but_follows_meaning(definitions_copy, catalog):
    path = definitions_copy / "customer_behaviour.yaml"
    path.write_text("# a comment\n" + path.read_text())
    assert load_catalog(definitions_copy) == catalog

    path.write_text(path.read_text().replace("[1h, 1d, 7d, 30d]", "[1h, 1d, 7d, 90d]", 1))
    changed = load_catalog(definitions_copy)
    old = {g.name: g.version for g in catalog.groups}
    new = {g.name: g.version for g in changed.groups}
    assert new["customer_behaviour"] != old["customer_behaviour"]
    assert new["transaction_features"] == old["transaction_features"]
    assert changed.views[0].version != catalog.views[0].version  # a view follows its groups


@pytest.mark.parametrize(
    "mutation, message",
    [
        (("function: mean", "function: median"), "function 'median' is not one of"),
        (("by: customer_id\n    windows: [10m, 1h, 1d, 7d, 30d]\n  - name: customer_amount_mean", "by: customer_id\n  - name: customer_amount_mean"), "needs `window` or `windows`"),
        (("of: amount", "of: merchant"), "`of` must be one of"),
        (("windows: [10m, 1h, 1d, 7d, 30d]", "windows: [1h, 1 day]"), "is not a positive duration"),
    ],
)
def test_bad_feature_definition_names_file_and_fix(definitions_copy, mutation, message):
    path = definitions_copy / "customer_behaviour.yaml"
    old, new = mutation
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(FeatureDefinitionError, match=message) as error:
        load_catalog(definitions_copy)
    assert "customer_behaviour.yaml" in str(error.value)


def test_view_referring_to_unknown_feature_is_refused(definitions_copy):
    path = definitions_copy / "fraud_feature_view.yaml"
    path.write_text(path.read_text().replace("terminal_behaviour: all", "terminal_behaviour: [terminal_speed]"))
    with pytest.raises(FeatureDefinitionError, match=r"terminal_behaviour has no features \['terminal_speed'\]"):
        load_catalog(definitions_copy)


def test_duplicate_feature_names_across_view_are_refused(definitions_copy):
    path = definitions_copy / "terminal_behaviour.yaml"
    path.write_text(path.read_text().replace("terminal_tx_count_{window}", "customer_tx_count_{window}"))
    with pytest.raises(FeatureDefinitionError, match="defined more than once"):
        load_catalog(definitions_copy)
