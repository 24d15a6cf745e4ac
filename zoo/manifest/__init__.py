"""Manifests: what a conversion read and wrote, with hashes, so an output folder can be verified alone.

- `zoo.manifest.schema`: the fields, their types, and the rule that a null says why;
- `zoo.manifest.document`: reading, writing and updating manifest files, finding entries;
- `zoo.manifest.checks`: the files an entry names against what it says (size, sha256).

What goes into an entry is recorded by the converters (`converters._convert.record`,
`converters.lora.record`); verifying a conversion again lives there too (`converters._verify`).
"""

from zoo.manifest.checks import COMPANIONS, FileCheck, check_files
from zoo.manifest.document import (
    MANIFEST_NAME,
    PARITY_NOT_MEASURED,
    Manifest,
    dumps,
    entry_type,
    is_lora,
    locked,
    lora_entry_name,
    matches,
    new_manifest,
    read_manifest,
    recipe_revision,
    relative,
    select,
    source_label,
    update_entries,
    weights_output,
    write_manifest,
)
from zoo.manifest.schema import (
    CONTROL_LORA_PARITY,
    CONTROL_LORA_PREFIX,
    ENTRY_TYPES,
    KINDS,
    LORA_BASE_KINDS,
    LORA_PARITY,
    LORA_PREFIX,
    MANIFEST_VERSION,
    config_sha256,
    validate_manifest,
)

__all__ = [
    "COMPANIONS",
    "CONTROL_LORA_PARITY",
    "CONTROL_LORA_PREFIX",
    "ENTRY_TYPES",
    "KINDS",
    "LORA_BASE_KINDS",
    "LORA_PARITY",
    "LORA_PREFIX",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "PARITY_NOT_MEASURED",
    "FileCheck",
    "Manifest",
    "check_files",
    "config_sha256",
    "dumps",
    "entry_type",
    "is_lora",
    "locked",
    "lora_entry_name",
    "matches",
    "new_manifest",
    "read_manifest",
    "recipe_revision",
    "relative",
    "select",
    "source_label",
    "update_entries",
    "validate_manifest",
    "weights_output",
    "write_manifest",
]
