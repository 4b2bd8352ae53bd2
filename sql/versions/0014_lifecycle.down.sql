-- 0014 lifecycle, undone: the tombstones go (with the record of every erased tenant).
DROP TABLE core.tenant_tombstones;
