"""Which chat requests the upstream answers, and on whose key: the gateway relays only what the
operator allows, so no caller spends the upstream key on names it was never meant to reach.

A request goes upstream only when all of these hold: an upstream is configured, this server
does not serve the name to the caller (`ModelService.serves`), the name matches
OPENFT_UPSTREAM_MODELS, it is not in this server's `ft:` namespace (another organization's
fine-tune, or a typo of one), and relaying is on for the caller's organization
(services/organizations.py). Anything else is answered as if there were no upstream: the OpenAI
names resolve to the default base, and an unknown name gets the 404 `model_not_found` that any
unknown name gets, which tells the caller nothing about the upstream or the operator's list."""

from __future__ import annotations

from fnmatch import fnmatchcase

from openft.services.models import ModelService
from openft.services.organizations import OrganizationService
from openft.services.upstream import UpstreamKey
from openft.settings import Settings


class RelayPolicy:
    def __init__(self, settings: Settings, models: ModelService, organizations: OrganizationService):
        self.settings = settings
        self.models = models
        self.organizations = organizations

    def key_for(self, organization_id: str, model: str) -> UpstreamKey | None:
        """The key to relay `model` with for this organization; None: it is answered here."""
        # The cheap checks first: most requests are for local models or listed names.
        if not self.settings.upstream_base_url or not self.allowed(model):
            return None
        if self.models.serves(organization_id, model) or self.models.in_namespace(model):
            return None
        organization = self.organizations.get(organization_id)
        if not organization.upstream.enabled:
            return None
        if organization.upstream.api_key:
            return UpstreamKey(organization.upstream.api_key, organization.name)
        server_key = self.settings.upstream_api_key
        return UpstreamKey(server_key.get_secret_value() if server_key else None)

    def allowed(self, model: str) -> bool:
        """Whether OPENFT_UPSTREAM_MODELS lists `model`, by name or glob (case-sensitive, as model names are)."""
        return any(fnmatchcase(model, pattern) for pattern in self.settings.upstream_models)
