-- 0009 usage: (filled by its issue's work)
SELECT 1;
