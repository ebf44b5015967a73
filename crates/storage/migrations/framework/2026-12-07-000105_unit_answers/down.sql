DROP TABLE unit_answers;
