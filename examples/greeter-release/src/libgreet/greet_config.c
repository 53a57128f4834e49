/* libgreet: configuration files and string buffers. */
#define _POSIX_C_SOURCE 200809L

#include "greet.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *trim(char *s)
{
    char *end;
    while (*s && isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static int config_set(struct greet_config *cfg, const char *key, const char *value)
{
    size_t i;
    char *v = dup_str(value);
    if (!v)
        return -1;
    for (i = 0; i < cfg->len; i++) {
        if (strcmp(cfg->items[i].key, key) == 0) {
            free(cfg->items[i].value);
            cfg->items[i].value = v;
            return 0;
        }
    }
    if (cfg->len == cfg->cap) {
        size_t ncap = cfg->cap ? cfg->cap * 2 : 16;
        struct greet_kv *n = realloc(cfg->items, ncap * sizeof(*n));
        if (!n) {
            free(v);
            return -1;
        }
        cfg->items = n;
        cfg->cap = ncap;
    }
    cfg->items[cfg->len].key = dup_str(key);
    if (!cfg->items[cfg->len].key) {
        free(v);
        return -1;
    }
    cfg->items[cfg->len].value = v;
    cfg->len++;
    return 0;
}

int greet_config_load(const char *path, struct greet_config *cfg, char *err, size_t errlen)
{
    FILE *f;
    char line[4096];
    unsigned lineno = 0;

    memset(cfg, 0, sizeof(*cfg));
    f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        char *s, *eq;
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "%s:%u: line too long", path, lineno);
            goto fail;
        }
        s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%u: expected 'key = value'", path, lineno);
            goto fail;
        }
        *eq = '\0';
        s = trim(s);
        if (*s == '\0') {
            snprintf(err, errlen, "%s:%u: empty key", path, lineno);
            goto fail;
        }
        if (config_set(cfg, s, trim(eq + 1)) != 0) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    fclose(f);
    return 0;
fail:
    fclose(f);
    greet_config_free(cfg);
    return -1;
}

const char *greet_config_get(const struct greet_config *cfg, const char *key, const char *def)
{
    size_t i;
    for (i = 0; i < cfg->len; i++)
        if (strcmp(cfg->items[i].key, key) == 0)
            return cfg->items[i].value;
    return def;
}

int greet_config_get_long(const struct greet_config *cfg, const char *key, long def, long min,
                          long max, long *out, char *err, size_t errlen)
{
    const char *v = greet_config_get(cfg, key, NULL);
    char *end;
    long n;

    if (!v || *v == '\0') {
        *out = def;
        return 0;
    }
    errno = 0;
    n = strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || n < min || n > max) {
        snprintf(err, errlen, "%s: '%s' is not an integer between %ld and %ld", key, v, min, max);
        return -1;
    }
    *out = n;
    return 0;
}

void greet_config_free(struct greet_config *cfg)
{
    size_t i;
    for (i = 0; i < cfg->len; i++) {
        free(cfg->items[i].key);
        free(cfg->items[i].value);
    }
    free(cfg->items);
    memset(cfg, 0, sizeof(*cfg));
}

static int buf_reserve(struct greet_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        char *n;
        while (ncap < need)
            ncap *= 2;
        n = realloc(b->data, ncap);
        if (!n)
            return -1;
        b->data = n;
        b->cap = ncap;
    }
    return 0;
}

int greet_buf_append(struct greet_buf *b, const void *data, size_t len)
{
    if (buf_reserve(b, len) != 0)
        return -1;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int greet_buf_printf(struct greet_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || buf_reserve(b, (size_t)n) != 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void greet_buf_free(struct greet_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
