-- 0013 billing: (filled by its issue's work)
SELECT 1;
