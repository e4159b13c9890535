"""The feature catalog: feature groups, label groups and feature views read from YAML.

`load_catalog(directory)` parses every `*.yaml` file under `feature_definitions/`, checks it
and returns immutable objects that the SQL compiler (offline) and, later, the online feature
computation both read. Each object carries a version: a hash of its normalised definition,
so comments and formatting do not change it but any change of meaning does.
"""
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Columns of a transaction that features may read or group by.
NUMERIC_SOURCE_COLUMNS = ("amount",)
ENTITY_COLUMNS = ("customer_id", "terminal_id")

# function -> (needs `of`, needs `by`, needs a window, default valid range)
FUNCTIONS: dict[str, tuple[bool, bool, bool, tuple[float | None, float | None]]] = {
    "value": (True, False, False, (None, None)),
    "hour_of_day": (False, False, False, (0, 23)),
    "is_weekend": (False, False, False, (0, 1)),
    "is_night": (False, False, False, (0, 1)),
    "distance_from_home_km": (False, False, False, (0, 20_038)),  # half the Earth's circumference
    "seconds_since_previous": (False, True, False, (0, None)),
    "count": (False, True, True, (0, None)),
    "sum": (True, True, True, (None, None)),
    "mean": (True, True, True, (None, None)),
    "stddev": (True, True, True, (0, None)),
    "min": (True, True, True, (None, None)),
    "max": (True, True, True, (None, None)),
    "ratio_to_mean": (True, True, True, (None, None)),
    "known_fraud_rate": (False, True, True, (0, 1)),
}

_WINDOW_PATTERN = re.compile(r"^(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


class FeatureDefinitionError(ValueError):
    """A feature definition file is malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class Feature:
    """One feature column: what it computes and over which history."""

    name: str
    function: str
    of: str | None = None
    by: tuple[str, ...] | None = None  # the entity: one column, or several (customer and terminal)
    window_seconds: int | None = None
    params: tuple[tuple[str, Any], ...] = ()
    valid_range: tuple[float | None, float | None] = (None, None)

    def param(self, key: str) -> Any:
        return dict(self.params)[key]


@dataclass(frozen=True)
class FeatureGroup:
    """Features computed together and stored in one table, one row per transaction."""

    name: str
    description: str
    features: tuple[Feature, ...]
    version: str

    @property
    def table(self) -> str:
        return f"features.{self.name}"

    @property
    def inputs(self) -> tuple[str, ...]:
        """The raw inputs (data-contract names) this group reads."""
        functions = {feature.function for feature in self.features}
        needed = ["transactions"]
        if "distance_from_home_km" in functions:
            needed += ["customers", "terminals"]
        if "known_fraud_rate" in functions:
            needed.append("fraud_labels")
        return tuple(needed)


@dataclass(frozen=True)
class LabelGroup:
    """Fraudulent vs non-fraudulent per transaction, with when the label became known."""

    name: str
    description: str
    version: str

    @property
    def table(self) -> str:
        return f"labels.{self.name}"


@dataclass(frozen=True)
class FeatureView:
    """The features and the label a model is trained and served on, joined by key."""

    name: str
    description: str
    join_keys: tuple[str, ...]
    groups: tuple[FeatureGroup, ...]
    features: tuple[tuple[str, tuple[Feature, ...]], ...]  # group name -> chosen features
    label: LabelGroup
    version: str

    @property
    def table(self) -> str:
        return f"views.{self.name}"

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(feature.name for _, chosen in self.features for feature in chosen)


@dataclass(frozen=True)
class FeatureCatalog:
    """Everything declared under one feature-definitions directory."""

    groups: tuple[FeatureGroup, ...]
    label_groups: tuple[LabelGroup, ...]
    views: tuple[FeatureView, ...]
    source_dir: Path = field(compare=False)

    def view(self, name: str) -> FeatureView:
        for view in self.views:
            if view.name == name:
                return view
        raise FeatureDefinitionError(
            f"{self.source_dir}: no feature view named {name!r}; defined: {[v.name for v in self.views]}"
        )


def definition_version(definition: Any) -> str:
    """A short, stable hash of a normalised definition."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def parse_window(text: str, where: str) -> int:
    """'7d' -> 604800 seconds."""
    match = _WINDOW_PATTERN.match(str(text))
    if not match or int(match.group(1)) == 0:
        raise FeatureDefinitionError(
            f"{where}: window {text!r} is not a positive duration like 15m, 1h, 7d"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def load_catalog(directory: Path) -> FeatureCatalog:
    """Read and check every definition under `directory`."""
    directory = Path(directory)
    documents = _read_documents(directory)
    groups = [_parse_group(doc, path) for path, doc in documents if doc["kind"] == "feature_group"]
    label_groups = [
        _parse_label_group(doc, path) for path, doc in documents if doc["kind"] == "label_group"
    ]
    _require_unique_names([g.name for g in groups] + [g.name for g in label_groups], directory)
    views = [
        _parse_view(doc, path, groups, label_groups)
        for path, doc in documents
        if doc["kind"] == "feature_view"
    ]
    _require_unique_names(
        [g.name for g in groups] + [g.name for g in label_groups] + [v.name for v in views],
        directory,
    )
    return FeatureCatalog(tuple(groups), tuple(label_groups), tuple(views), directory)


def _read_documents(directory: Path) -> list[tuple[Path, dict]]:
    if not directory.is_dir():
        raise FeatureDefinitionError(f"feature definitions directory {directory} does not exist")
    documents = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise FeatureDefinitionError(f"{path.name}: not valid YAML: {error}") from error
        if not isinstance(doc, dict) or doc.get("kind") not in (
            "feature_group",
            "label_group",
            "feature_view",
        ):
            raise FeatureDefinitionError(
                f"{path.name}: needs `kind: feature_group`, `label_group` or `feature_view`"
            )
        _require_name(doc, path.name)
        documents.append((path, doc))
    if not documents:
        raise FeatureDefinitionError(f"no *.yaml definitions found in {directory}")
    return documents


def _require_name(doc: dict, where: str) -> None:
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise FeatureDefinitionError(
            f"{where}: `name` must be lower_snake_case letters and digits, got {name!r}"
        )


def _require_unique_names(names: list[str], where: Path) -> None:
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise FeatureDefinitionError(f"{where}: names defined more than once: {duplicates}")


def _parse_group(doc: dict, path: Path) -> FeatureGroup:
    entries = doc.get("features")
    if not isinstance(entries, list) or not entries:
        raise FeatureDefinitionError(f"{path.name}: a feature group needs a list of `features`")
    features = [
        feature for index, entry in enumerate(entries) for feature in _expand(entry, f"{path.name} feature #{index + 1}")
    ]
    _require_unique_names([f.name for f in features], path)
    normalised = {
        "name": doc["name"],
        "features": [_feature_identity(feature) for feature in features],
    }
    return FeatureGroup(
        name=doc["name"],
        description=str(doc.get("description", "")).strip(),
        features=tuple(features),
        version=definition_version(normalised),
    )


def _expand(entry: Any, where: str) -> list[Feature]:
    """One YAML entry -> one feature, or one per window when it lists `windows`."""
    if not isinstance(entry, dict):
        raise FeatureDefinitionError(f"{where}: each feature is a mapping with name and function")
    unknown = set(entry) - {"name", "function", "of", "by", "window", "windows", "params", "range"}
    if unknown:
        raise FeatureDefinitionError(f"{where}: unknown keys {sorted(unknown)}")
    function = entry.get("function")
    if function not in FUNCTIONS:
        raise FeatureDefinitionError(
            f"{where}: function {function!r} is not one of {sorted(FUNCTIONS)}"
        )
    needs_of, needs_by, needs_window, default_range = FUNCTIONS[function]
    name = entry.get("name")
    if not isinstance(name, str):
        raise FeatureDefinitionError(f"{where}: `name` is missing")
    windows = entry.get("windows", [entry["window"]] if "window" in entry else [])
    if needs_window and not windows:
        raise FeatureDefinitionError(f"{where} ({name}): function {function} needs `window` or `windows`")
    if not needs_window and windows:
        raise FeatureDefinitionError(f"{where} ({name}): function {function} takes no window")
    if len(windows) > 1 and "{window}" not in name:
        raise FeatureDefinitionError(f"{where} ({name}): with several windows the name needs {{window}}")
    of = entry.get("of")
    by = entry.get("by")
    by = tuple(by) if isinstance(by, list) else (by,) if by is not None else ()
    if needs_of and of not in NUMERIC_SOURCE_COLUMNS:
        raise FeatureDefinitionError(
            f"{where} ({name}): `of` must be one of {list(NUMERIC_SOURCE_COLUMNS)}, got {of!r}"
        )
    if needs_by and (not by or not set(by) <= set(ENTITY_COLUMNS) or len(set(by)) != len(by)):
        raise FeatureDefinitionError(
            f"{where} ({name}): `by` must be one or more of {list(ENTITY_COLUMNS)}, got {entry.get('by')!r}"
        )
    params = entry.get("params", {})
    if function == "is_night" and set(params) != {"from_hour", "to_hour"}:
        raise FeatureDefinitionError(f"{where} ({name}): is_night needs params from_hour and to_hour")
    valid_range = tuple(entry.get("range", default_range))
    if len(valid_range) != 2:
        raise FeatureDefinitionError(f"{where} ({name}): `range` is [low, high]; null for open")

    def build(window: str | None) -> Feature:
        window_seconds = parse_window(window, f"{where} ({name})") if window else None
        feature_name = name.replace("{window}", window) if window else name
        if not _NAME_PATTERN.match(feature_name):
            raise FeatureDefinitionError(f"{where}: feature name {feature_name!r} is not lower_snake_case")
        return Feature(
            name=feature_name,
            function=function,
            of=of if needs_of else None,
            by=by if needs_by else None,
            window_seconds=window_seconds,
            params=tuple(sorted(params.items())),
            valid_range=valid_range,
        )

    return [build(window) for window in windows] if windows else [build(None)]


def _feature_identity(feature: Feature) -> dict:
    """What defines a feature's values (the valid range is a check, not part of it)."""
    return {
        "name": feature.name,
        "function": feature.function,
        "of": feature.of,
        "by": list(feature.by) if feature.by else None,
        "window_seconds": feature.window_seconds,
        "params": dict(feature.params),
    }


def _parse_label_group(doc: dict, path: Path) -> LabelGroup:
    return LabelGroup(
        name=doc["name"],
        description=str(doc.get("description", "")).strip(),
        version=definition_version({"name": doc["name"], "kind": "label_group"}),
    )


def _parse_view(
    doc: dict, path: Path, groups: list[FeatureGroup], label_groups: list[LabelGroup]
) -> FeatureView:
    groups_by_name = {group.name: group for group in groups}
    labels_by_name = {group.name: group for group in label_groups}
    if doc.get("label") not in labels_by_name:
        raise FeatureDefinitionError(
            f"{path.name}: `label` must name a label group, one of {sorted(labels_by_name)}"
        )
    join_keys = tuple(doc.get("join_keys", ["transaction_id"]))
    if join_keys != ("transaction_id",):
        raise FeatureDefinitionError(f"{path.name}: only `join_keys: [transaction_id]` is supported")
    selection = doc.get("features")
    if not isinstance(selection, dict) or not selection:
        raise FeatureDefinitionError(
            f"{path.name}: `features` maps group names to `all` or a list of feature names"
        )
    chosen: list[tuple[str, tuple[Feature, ...]]] = []
    for group_name, names in selection.items():
        group = groups_by_name.get(group_name)
        if group is None:
            raise FeatureDefinitionError(
                f"{path.name}: unknown feature group {group_name!r}; known: {sorted(groups_by_name)}"
            )
        by_name = {feature.name: feature for feature in group.features}
        if names == "all":
            chosen.append((group_name, group.features))
            continue
        missing = [name for name in names if name not in by_name]
        if missing:
            raise FeatureDefinitionError(
                f"{path.name}: group {group_name} has no features {missing}"
            )
        chosen.append((group_name, tuple(by_name[name] for name in names)))
    all_names = [feature.name for _, features in chosen for feature in features]
    _require_unique_names(all_names, path)
    label = labels_by_name[doc["label"]]
    used_groups = tuple(groups_by_name[name] for name, _ in chosen)
    version = definition_version(
        {
            "name": doc["name"],
            "features": {name: [f.name for f in features] for name, features in chosen},
            "group_versions": {group.name: group.version for group in used_groups},
            "label_version": label.version,
        }
    )
    return FeatureView(
        name=doc["name"],
        description=str(doc.get("description", "")).strip(),
        join_keys=join_keys,
        groups=used_groups,
        features=tuple(chosen),
        label=label,
        version=version,
    )
