/* Users and groups for exec and file ops: "name" or "uid[:gid]", resolved without NSS. */
#include "agent.h"

#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Splits a colon-separated line into at most max fields, in place. */
static int split_colon(char *line, char **f, int max) {
  int n = 0;
  f[n++] = line;
  for (char *c = line; *c && n < max; c++)
    if (*c == ':') {
      *c = '\0';
      f[n++] = c + 1;
    }
  return n;
}

/* Own /etc/passwd parser: static binaries must not depend on NSS. Matches by name, or by
 * uid when name is NULL. */
int agent_passwd_lookup(const char *name, uid_t uid, struct ident *id) {
  FILE *f = fopen("/etc/passwd", "re");
  if (!f) return -1;
  char line[1024];
  int found = -1;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    char *fl[7];
    if (split_colon(line, fl, 7) < 7) continue;
    uint64_t u, g;
    if (agent_parse_u64(fl[2], UINT32_MAX, &u) || agent_parse_u64(fl[3], UINT32_MAX, &g)) continue;
    if (name ? strcmp(fl[0], name) != 0 : (uid_t)u != uid) continue;
    id->uid = (uid_t)u;
    id->gid = (gid_t)g;
    snprintf(id->home, sizeof id->home, "%s", fl[5][0] ? fl[5] : "/");
    snprintf(id->name, sizeof id->name, "%s", fl[0]);
    found = 0;
    break;
  }
  fclose(f);
  return found;
}

static void group_lookup(struct ident *id) {
  id->groups[0] = id->gid;
  id->ngroups = 1;
  if (!id->name[0]) return;
  FILE *f = fopen("/etc/group", "re");
  if (!f) return;
  char line[4096];
  while (fgets(line, sizeof line, f) && id->ngroups < MAX_GROUPS) {
    line[strcspn(line, "\n")] = '\0';
    char *fl[4];
    if (split_colon(line, fl, 4) < 4) continue;
    uint64_t g;
    if (agent_parse_u64(fl[2], UINT32_MAX, &g) || (gid_t)g == id->gid) continue;
    for (char *m = strtok(fl[3], ","); m; m = strtok(NULL, ","))
      if (!strcmp(m, id->name)) {
        id->groups[id->ngroups++] = (gid_t)g;
        break;
      }
  }
  fclose(f);
}

/* Resolves "name" or "uid[:gid]". Returns NULL or an error message. */
const char *agent_resolve_user(const char *spec, struct ident *id) {
  memset(id, 0, sizeof *id);
  const char *colon = strchr(spec, ':');
  if (spec[0] >= '0' && spec[0] <= '9') {
    char ubuf[24];
    size_t ul = colon ? (size_t)(colon - spec) : strlen(spec);
    if (ul >= sizeof ubuf) return "bad uid";
    memcpy(ubuf, spec, ul);
    ubuf[ul] = '\0';
    uint64_t u, g;
    if (agent_parse_u64(ubuf, UINT32_MAX - 1, &u)) return "bad uid";
    if (agent_passwd_lookup(NULL, (uid_t)u, id) < 0) {
      id->uid = (uid_t)u;
      id->gid = (gid_t)u;
      snprintf(id->home, sizeof id->home, "/");
    }
    if (colon) {
      if (agent_parse_u64(colon + 1, UINT32_MAX - 1, &g)) return "bad gid";
      id->gid = (gid_t)g;
      id->name[0] = '\0'; /* an explicit gid means exactly that group */
    }
  } else if (colon || agent_passwd_lookup(spec, 0, id) < 0) {
    return "no such user";
  }
  group_lookup(id);
  return NULL;
}

int agent_become(const struct ident *id) {
  if (setgroups((size_t)id->ngroups, id->groups) < 0) return -1;
  if (setgid(id->gid) < 0) return -1;
  if (setuid(id->uid) < 0) return -1;
  return 0;
}
