DROP TABLE actions;
DROP TABLE order_lines;
DROP TABLE orders;
DROP TABLE user_profiles;
DROP TABLE users;
