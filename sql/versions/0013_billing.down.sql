-- 0013 billing, undone: (filled by its issue's work)
SELECT 1;
