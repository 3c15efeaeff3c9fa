package handlers

import "github.com/kanade-fleet/backend/auth"

// RoleTableForTest is routeRoles, for the tests that walk every route.
func RoleTableForTest() map[string]auth.Role { return routeRoles() }
