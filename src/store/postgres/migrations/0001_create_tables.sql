-- tower-sso user store, version 1: users, teams and memberships.
-- Separate from LiteLLM's own tables (`LiteLLM_UserTable`, ...): every name starts with `tower_sso_`.

CREATE TABLE tower_sso_users (
    user_id         text PRIMARY KEY,
    -- ASCII-lower-cased by the store; compared as is (never SQL lower(), which folds Unicode).
    email           text,
    role            text NOT NULL,
    models          text[] NOT NULL DEFAULT '{}',
    max_budget      double precision,
    budget_duration text,
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX tower_sso_users_email_key ON tower_sso_users (email);

CREATE TABLE tower_sso_teams (
    team_id         text PRIMARY KEY,
    alias           text,
    models          text[] NOT NULL DEFAULT '{}',
    max_budget      double precision,
    budget_duration text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tower_sso_memberships (
    team_id    text NOT NULL,
    user_id    text NOT NULL,
    -- Insertion order: a user's teams are listed in the order they were added.
    seq        bigserial NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tower_sso_memberships_pkey PRIMARY KEY (team_id, user_id),
    CONSTRAINT tower_sso_memberships_team_fkey FOREIGN KEY (team_id)
        REFERENCES tower_sso_teams (team_id) ON DELETE CASCADE,
    CONSTRAINT tower_sso_memberships_user_fkey FOREIGN KEY (user_id)
        REFERENCES tower_sso_users (user_id) ON DELETE CASCADE
);

CREATE INDEX tower_sso_memberships_user_idx ON tower_sso_memberships (user_id, seq);
