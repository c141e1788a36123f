"""Trust mappings: which verified identities may receive which Kubernetes grant.

- `conditions`: one claim condition (equals, glob, regex, oneOf, contains) and its pure
  evaluation;
- `patterns`: globs and regexes rewritten for RE2, which matches them in linear time;
- `subjects`: a grant's user and groups taken from verified claims behind a fixed prefix
  (`ClaimReference`), resolved at issue time or refused (GRANT_CLAIM_UNUSABLE);
- `claimtypes`: the known JSON types of JWT, ID-token, GitHub, GitLab and Kubernetes claims,
  and the conditions `mappings validate` refuses because they can never match them;
- `model`: Grant, TrustMapping, and MappingSet with `match(identity, role)` (deny by default);
- `index`: the by-value index that keeps matching independent of the number of mappings;
- `validate`, `load`: YAML documents and folders into mappings, every problem reported at once;
- `schema`: the document as a structural OpenAPI v3 schema; `crd`: the TrustMapping CRD made
  from it (`scripts/gen-crd`);
- `store`: the current set, reloads that keep the last good set, and a folder watcher;
- `cluster`: TrustMapping resources as a source, judged like files, with their status;
- `lint`, `people`, `explain`: warnings about risky trust (people: unverified email, one
  user for everyone), and the dry run of a match (the CLI's);
- `bench`: the few-versus-many matching benchmark.
"""

from exchanger.mappings.conditions import (
    MISSING,
    Condition,
    ConditionResult,
    Operator,
    evaluate,
)
from exchanger.mappings.load import load_folder, parse_documents
from exchanger.mappings.model import (
    AMBIGUOUS_MAPPING,
    NO_MATCHING_MAPPING,
    ROLE_NOT_ALLOWED,
    Grant,
    MappingSet,
    TrustMapping,
)
from exchanger.mappings.schema import TRUST_MAPPING_SCHEMA
from exchanger.mappings.store import (
    FolderWatcher,
    MappingStore,
    ReloadResult,
    store_for_folder,
)
from exchanger.mappings.subjects import GRANT_CLAIM_UNUSABLE, ClaimReference

__all__ = [
    "AMBIGUOUS_MAPPING",
    "GRANT_CLAIM_UNUSABLE",
    "MISSING",
    "NO_MATCHING_MAPPING",
    "ROLE_NOT_ALLOWED",
    "TRUST_MAPPING_SCHEMA",
    "ClaimReference",
    "Condition",
    "ConditionResult",
    "FolderWatcher",
    "Grant",
    "MappingSet",
    "MappingStore",
    "Operator",
    "ReloadResult",
    "TrustMapping",
    "evaluate",
    "load_folder",
    "parse_documents",
    "store_for_folder",
]
