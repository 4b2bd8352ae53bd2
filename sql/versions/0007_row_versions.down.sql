-- 0007 row_versions, undone: (filled by its issue's work)
SELECT 1;
