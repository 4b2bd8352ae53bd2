-- 0009 usage, undone: (filled by its issue's work)
SELECT 1;
