-- The built-in config server's values: one row per version of an absolute variable name.
-- `value_ciphertext` is the JSON value sealed with ChaCha20-Poly1305 under the key in
-- DATA_DIR/config_server.key (base64, tag appended), `nonce` its base64 nonce; the name is the
-- associated data. `generation_digest` (SHA-256 of type, options and signing CA version) lets
-- `converge` tell whether a generated value is still what its definition asks for; it is empty
-- for values stored as given. Variable sets pin these ids through `variables.variable_id`.
CREATE TABLE config_server_values (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    value_type TEXT NOT NULL,
    generation_digest TEXT NOT NULL DEFAULT '',
    value_ciphertext TEXT NOT NULL,
    nonce TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX config_server_values_name_id ON config_server_values (name, id);
