-- 0004 identity, undone: email verification goes. Accounts left without an address (a
-- replaced account, or a sign-up still waiting for its address) get a placeholder under
-- the reserved .invalid domain, since every account had an address before 0004.
DROP TABLE core.email_verifications;
UPDATE core.users SET email = 'no-address-' || user_id || '@invalid.invalid' WHERE email IS NULL;
ALTER TABLE core.users DROP CONSTRAINT users_verified_has_email;
ALTER TABLE core.users ALTER COLUMN email SET NOT NULL;
ALTER TABLE core.users DROP COLUMN email_verified_at;
