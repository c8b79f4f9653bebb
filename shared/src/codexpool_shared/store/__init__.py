"""The pool store: providers, agents, pools and live routing state in Redis (docs/SPEC.md 4).

Every service that reads or writes pool state goes through these functions, so the layout
(documented in each module) has one owner. Keys come only from ``codexpool_shared.keys``.
"""

from codexpool_shared.store.agents import (
    Agent,
    AgentKey,
    add_agent_key,
    create_agent,
    delete_agent,
    get_agent,
    key_digest,
    list_agent_keys,
    list_agents,
    record_keys_used,
    resolve_agent_key,
    revoke_agent_key,
)
from codexpool_shared.store.claims import AccountClaims, account_claims, jwt_payload
from codexpool_shared.store.credentials import StoredCredentials, read_credentials, write_tokens
from codexpool_shared.store.errors import Conflict, InvalidField, NotFound, StoreError
from codexpool_shared.store.live import (
    MAX_COOLDOWN_MS,
    LiveState,
    QuotaSnapshot,
    QuotaWindow,
    extend_cooldown,
    get_live,
    record_failure,
    record_success,
    write_quota,
    write_quotas,
)
from codexpool_shared.store.pools import (
    STRATEGIES,
    Pool,
    add_member,
    get_pool,
    put_pool,
    remove_member,
    validate_pool,
)
from codexpool_shared.store.providers import (
    TOKEN_FIELDS,
    Provider,
    get_provider,
    list_providers,
    register_provider,
    set_provider_status,
    validate_name,
)
from codexpool_shared.store.refresh import TokenRefresher
from codexpool_shared.store.removal import (
    PoolMemberRemoved,
    ProviderDeleted,
    ProviderInUse,
    delete_provider,
)

__all__ = [
    "MAX_COOLDOWN_MS",
    "STRATEGIES",
    "TOKEN_FIELDS",
    "AccountClaims",
    "Agent",
    "AgentKey",
    "Conflict",
    "InvalidField",
    "LiveState",
    "NotFound",
    "Pool",
    "PoolMemberRemoved",
    "Provider",
    "ProviderDeleted",
    "ProviderInUse",
    "QuotaSnapshot",
    "QuotaWindow",
    "StoreError",
    "StoredCredentials",
    "TokenRefresher",
    "account_claims",
    "add_agent_key",
    "add_member",
    "create_agent",
    "delete_agent",
    "delete_provider",
    "extend_cooldown",
    "get_agent",
    "get_live",
    "get_pool",
    "get_provider",
    "jwt_payload",
    "key_digest",
    "list_agent_keys",
    "record_keys_used",
    "list_agents",
    "list_providers",
    "put_pool",
    "read_credentials",
    "record_failure",
    "record_success",
    "register_provider",
    "remove_member",
    "resolve_agent_key",
    "revoke_agent_key",
    "set_provider_status",
    "validate_name",
    "validate_pool",
    "write_quota",
    "write_quotas",
    "write_tokens",
]
