/* libgreet: HTTP/1.0 request reading/parsing and response writing. */
#define _POSIX_C_SOURCE 200809L

#include "greet.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Returns the length of the head (through the blank line), or 0 when incomplete. */
static size_t head_end(const char *buf, size_t len)
{
    size_t i;
    for (i = 0; i + 1 < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i + 1] == '\n')
            return i + 2;
        if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

int greet_request_read(int fd, struct greet_request *req)
{
    req->len = 0;
    req->buf[0] = '\0';
    for (;;) {
        ssize_t n;
        size_t end;

        if (req->len >= GREET_MAX_REQUEST)
            return 431;
        n = read(fd, req->buf + req->len, GREET_MAX_REQUEST - req->len);
        if (n < 0) {
            if (errno == EINTR && !greet_stop_requested)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 408;
            return 400;
        }
        if (n == 0)
            return req->len == 0 ? -1 : 400;
        req->len += (size_t)n;
        req->buf[req->len] = '\0';
        end = head_end(req->buf, req->len);
        if (end) {
            req->len = end; /* anything after the head (a body) is ignored */
            req->buf[end] = '\0';
            return 0;
        }
    }
}

static int is_token_char(int c)
{
    return isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Cuts the line starting at *p; returns it without "\r\n", advances *p. NULL at the end. */
static char *next_line(char **p)
{
    char *start = *p, *nl;
    if (!start || *start == '\0')
        return NULL;
    nl = strchr(start, '\n');
    if (nl) {
        *nl = '\0';
        *p = nl + 1;
    } else {
        *p = start + strlen(start);
    }
    if (nl && nl > start && nl[-1] == '\r')
        nl[-1] = '\0';
    return start;
}

int greet_request_parse(struct greet_request *req)
{
    char *p = req->buf, *line, *sp1, *sp2, *q;
    size_t plen;

    req->method = req->target = req->version = NULL;
    req->path[0] = '\0';
    req->nheaders = 0;

    line = next_line(&p);
    if (!line)
        return 400;
    sp1 = strchr(line, ' ');
    if (!sp1)
        return 400;
    *sp1 = '\0';
    sp2 = strchr(sp1 + 1, ' ');
    if (!sp2)
        return 400;
    *sp2 = '\0';
    req->method = line;
    req->target = sp1 + 1;
    req->version = sp2 + 1;

    if (*req->method == '\0')
        return 400;
    for (q = line; *q; q++)
        if (!is_token_char((unsigned char)*q))
            return 400;
    if (req->target[0] != '/')
        return 400;
    for (q = sp1 + 1; *q; q++)
        if ((unsigned char)*q <= ' ' || *q == 0x7f)
            return 400;
    if (strncmp(req->version, "HTTP/", 5) != 0)
        return 400;
    if (strcmp(req->version, "HTTP/1.0") != 0 && strcmp(req->version, "HTTP/1.1") != 0)
        return 505;

    plen = strcspn(req->target, "?#");
    if (plen >= sizeof(req->path))
        return 414;
    memcpy(req->path, req->target, plen);
    req->path[plen] = '\0';

    while ((line = next_line(&p)) != NULL) {
        char *colon, *value, *end;
        if (*line == '\0')
            break;
        if (line[0] == ' ' || line[0] == '\t')
            return 400; /* obsolete line folding */
        colon = strchr(line, ':');
        if (!colon || colon == line)
            return 400;
        *colon = '\0';
        for (q = line; *q; q++)
            if (!is_token_char((unsigned char)*q))
                return 400;
        value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        end = value + strlen(value);
        while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (req->nheaders == GREET_MAX_HEADERS)
            return 431;
        req->headers[req->nheaders].name = line;
        req->headers[req->nheaders].value = value;
        req->nheaders++;
    }
    return 0;
}

const char *greet_request_header(const struct greet_request *req, const char *name)
{
    size_t i;
    for (i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

const char *greet_status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

int greet_send_response(int fd, int status, const char *content_type, const char *extra_headers,
                        const char *body, size_t body_len, int head_only)
{
    char head[1024];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.0 %d %s\r\n"
                     "Server: greeter/" GREET_VERSION "\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %lu\r\n"
                     "Connection: close\r\n"
                     "%s"
                     "\r\n",
                     status, greet_status_text(status), content_type, (unsigned long)body_len,
                     extra_headers ? extra_headers : "");
    if (n < 0 || (size_t)n >= sizeof(head))
        return -1;
    if (greet_write_all(fd, head, (size_t)n) != 0)
        return -1;
    if (!head_only && body_len > 0)
        return greet_write_all(fd, body, body_len);
    return 0;
}

int greet_read_to_eof(int fd, struct greet_buf *b, size_t max)
{
    char chunk[4096];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0) {
            if (errno == EINTR && !greet_stop_requested)
                continue;
            return -1;
        }
        if (n == 0)
            return 0;
        if (b->len + (size_t)n > max)
            return -1;
        if (greet_buf_append(b, chunk, (size_t)n) != 0)
            return -1;
    }
}

int greet_response_parse(const char *data, size_t len, int *status, size_t *body_off)
{
    size_t end;
    int code = 0, i;

    if (len < 12 || strncmp(data, "HTTP/1.", 7) != 0 || data[8] != ' ')
        return -1;
    for (i = 9; i < 12; i++) {
        if (!isdigit((unsigned char)data[i]))
            return -1;
        code = code * 10 + (data[i] - '0');
    }
    end = head_end(data, len);
    if (!end)
        return -1;
    *status = code;
    *body_off = end;
    return 0;
}
