-- 0007 row_versions: (filled by its issue's work)
SELECT 1;
