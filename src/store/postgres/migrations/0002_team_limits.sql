-- tower-sso user store, version 2: a team's rate limits (LiteLLM's `tpm_limit` / `rpm_limit`
-- from `default_team_params`). Null: no limit.

ALTER TABLE tower_sso_teams
    ADD COLUMN tpm_limit bigint,
    ADD COLUMN rpm_limit bigint;
