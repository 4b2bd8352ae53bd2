-- 0006 keys and lockout, undone: the login-failure table, the assignee foreign key and
-- the keys' member column go. Data fixes stay done: keys revoked and tasks unassigned
-- by the upgrade remain so.
DROP TABLE core.login_failures CASCADE;  -- with the repeatable functions on its row type
ALTER TABLE core.tasks DROP CONSTRAINT tasks_assignee_member_fkey;
DROP INDEX core.api_keys_user_idx;
ALTER TABLE core.api_keys DROP COLUMN user_id;
