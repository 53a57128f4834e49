# bosh-rs job template renderer.
#
# Implements the evaluation context that BOSH job templates are written against (p, if_p,
# link, if_link, spec, ...; formats.md §7.1) on top of Ruby's stdlib ERB. The Rust side
# (crates/bosh-templates/src/lib.rs) runs ONE process per batch: it writes a single JSON
# request on stdin and reads a single JSON answer from stdout.
#
# Request:  {"dns": {...}, "instances": [{"spec": {...}, "jobs": [{"name", "release",
#            "properties", "links", "monit", "templates": [{"source", "text"}]}]}]}
# Answer:   {"pid": N, "instances": [{"jobs": [{"monit": R, "templates": [R, ...]}]}]}
#           where R is {"content": "..."} or {"error": {"line": "3"|nil, "message": "..."}}
#
# Every template is rendered even when others fail, so one answer carries all errors.

require 'erb'
require 'json'
require 'yaml'
require 'ostruct'
require 'shellwords'
require 'base64'
require 'digest'
require 'set'

# The director renders with ActiveSupport's blank?/present? loaded; releases rely on them.
begin
  require 'active_support'
  require 'active_support/core_ext/object/blank'
rescue LoadError
  class Object
    def blank?
      respond_to?(:empty?) ? !!empty? : !self
    end

    def present?
      !blank?
    end

    def presence
      self if present?
    end
  end

  class NilClass
    def blank?
      true
    end
  end

  class FalseClass
    def blank?
      true
    end
  end

  class TrueClass
    def blank?
      false
    end
  end

  class Numeric
    def blank?
      false
    end
  end

  class String
    def blank?
      empty? || /\A[[:space:]]*\z/.match?(self)
    end
  end
end

module Bosh
  module Template
    class UnknownProperty < StandardError
      attr_reader :name

      def initialize(names)
        @name = names
        # An array of names shows in inspect form, as the director prints it.
        super("Can't find property '#{names}'")
      end
    end

    class UnknownLink < StandardError
      def initialize(name)
        super("Can't find link '#{name}'")
      end
    end

    # Dotted-name lookup shared by the context, links and link instances.
    module PropertyLookup
      def lookup_property(collection, name)
        return nil if collection.nil?

        name.to_s.split('.').reduce(collection) do |node, key|
          value = node[key]
          break nil if value.nil?

          value
        end
      end

      def p(*args)
        names = Array(args[0])
        names.each do |name|
          value = lookup_property(property_source, name)
          return value unless value.nil?
        end
        return args[1] if args.length == 2

        raise UnknownProperty, names
      end

      def if_p(*names)
        values = []
        names.each do |name|
          value = lookup_property(property_source, name)
          return ActiveElseBlock.new(self) if value.nil?

          values << value
        end
        yield(*values)
        InactiveElseBlock.new
      end
    end

    # Returned by if_p/if_link when the block did not run: the else branch runs.
    class ActiveElseBlock
      def initialize(owner)
        @owner = owner
      end

      def else
        yield
      end

      def else_if_p(*names, &block)
        @owner.if_p(*names, &block)
      end

      def else_if_link(name, &block)
        @owner.if_link(name, &block)
      end
    end

    # Returned by if_p/if_link when the block ran: every else branch is skipped.
    class InactiveElseBlock
      def else; end

      def else_if_p(*_names)
        InactiveElseBlock.new
      end

      def else_if_link(_name)
        InactiveElseBlock.new
      end
    end

    # `spec` keeps OpenStruct's behaviour plus `methods(false)` listing the keys, which
    # releases use to enumerate `spec.networks`.
    class SpecStruct < OpenStruct
      def methods(regular = true)
        return super if regular

        to_h.keys.map(&:to_sym)
      end
    end

    class LinkInstance
      include PropertyLookup

      attr_reader :name, :index, :id, :az, :address, :properties, :bootstrap

      def initialize(hash)
        @name = hash['name']
        @index = hash['index']
        @id = hash['id']
        @az = hash['az']
        @address = hash['address']
        @properties = hash['properties']
        @bootstrap = hash['bootstrap']
      end

      def inspect
        "#<Bosh::Template::LinkInstance #{@name}/#{@id}>"
      end

      private

      def property_source
        @properties
      end
    end

    # Answers link.address with the literal address of a manual link.
    class LiteralAddress
      def initialize(address)
        @address = address
      end

      def encode_query(_criteria, _short)
        @address
      end
    end

    # The director's DNS query encoder (long form `q-<slug>.<group>.<net>.<deployment>.<domain>`
    # and short form `q-<slug>.q-g<group id>.<domain>`); the numeric ids come from the request.
    class DnsEncoder
      HEALTH = { 'healthy' => 3, 'unhealthy' => 1, 'all' => 4, 'default' => 0 }.freeze

      def initialize(config)
        config ||= {}
        @az_ids = config['az_ids'] || {}
        @network_ids = config['network_ids'] || {}
        @instance_nums = config['instance_nums'] || {}
        @group_ids = config['group_ids'] || []
      end

      def encode_query(criteria, short)
        octets = []
        octets << (criteria[:uuid].nil? || short ? "q-#{slug(criteria, short)}" : criteria[:uuid])
        if short
          octets << "q-g#{group_id(criteria)}"
        else
          octets.concat(
            [criteria[:group_name], criteria[:default_network], criteria[:deployment_name]]
              .map { |part| canonical(part.to_s) },
          )
        end
        octets << criteria[:root_domain]
        octets.join('.')
      end

      private

      def slug(criteria, short)
        parts = Array(criteria[:azs]).map { |az| "a#{known(@az_ids, az, 'AZ')}" }
        if short
          parts << "m#{known(@instance_nums, criteria[:uuid], 'instance UUID')}" unless criteria[:uuid].nil?
          unless criteria[:default_network].nil?
            parts << "n#{known(@network_ids, criteria[:default_network], 'Network')}"
          end
        end
        case criteria[:initial_health_check]
        when 'synchronous' then parts << 'y1'
        when 'asynchronous' then parts << 'y0'
        end
        parts << "s#{HEALTH.fetch(criteria[:status], 0)}"
        parts.sort.join
      end

      def known(table, key, what)
        value = table[key.to_s]
        raise "Unknown #{what}: '#{key}'" if value.nil?

        value
      end

      def group_id(criteria)
        found = @group_ids.find do |g|
          g['type'] == criteria[:group_type] && g['name'] == criteria[:group_name] &&
            g['deployment'] == criteria[:deployment_name]
        end
        found.nil? ? '' : found['id'].to_s
      end

      def canonical(text)
        name = text.downcase.tr('_', '-').gsub(/[^a-z0-9-]/, '')
        raise "Invalid DNS canonical name '#{name}', cannot start with a hyphen" if name.start_with?('-')
        raise "Invalid DNS canonical name '#{name}', cannot end with a hyphen" if name.end_with?('-')

        name
      end
    end

    class Link
      include PropertyLookup

      attr_reader :instances, :properties

      def initialize(hash, encoder)
        @instances = hash['instances'].map { |i| LinkInstance.new(i) }
        @properties = hash['properties']
        @encoder = hash.key?('address') ? LiteralAddress.new(hash['address']) : encoder
        @short = hash.fetch('use_short_dns_addresses', false)
        if hash.fetch('use_link_dns_names', false)
          @group_name = hash['group_name']
          @group_type = 'link'
        else
          @group_name = hash['instance_group']
          @group_type = 'instance-group'
        end
        @default_network = hash['default_network']
        @deployment_name = hash['deployment_name']
        @domain = hash['domain']
      end

      def address(criteria = {})
        raise NotImplementedError, 'link.address requires bosh director' if @encoder.nil?

        full = criteria.merge(
          group_name: @group_name,
          group_type: @group_type,
          default_network: @default_network,
          deployment_name: @deployment_name,
          root_domain: @domain,
        )
        @encoder.encode_query(full, @short)
      end

      def inspect
        "#<Bosh::Template::Link>"
      end

      private

      def property_source
        @properties
      end
    end

    class EvaluationContext
      include PropertyLookup

      attr_reader :name, :index, :properties, :raw_properties, :spec

      def initialize(spec, encoder)
        @name = spec['name']
        @index = spec['index']
        @spec = EvaluationContext.structs(spec, SpecStruct)
        @raw_properties = spec['properties'] || {}
        @properties = EvaluationContext.structs(@raw_properties, OpenStruct)
        @links = spec['links'] || {}
        @encoder = encoder
      end

      def self.structs(value, klass)
        case value
        when Hash then klass.new(value.transform_values { |v| structs(v, klass) })
        when Array then value.map { |v| structs(v, klass) }
        else value
        end
      end

      def get_binding
        binding
      end

      # Short, so error messages (NameError prints the receiver) never dump properties.
      def inspect
        '#<Bosh::Template::EvaluationContext>'
      end
      alias to_s inspect

      def link(name)
        hash = lookup_property(@links, name)
        raise UnknownLink, name unless hash.is_a?(Hash) && hash.key?('instances')

        Link.new(hash, @encoder)
      end

      def if_link(name)
        hash = lookup_property(@links, name)
        return ActiveElseBlock.new(self) unless hash.is_a?(Hash) && hash.key?('instances')

        yield Link.new(hash, @encoder)
        InactiveElseBlock.new
      end

      private

      def property_source
        @raw_properties
      end
    end

    # The director's (and older bosh-template's) namespaces, for templates naming them.
    EvaluationContext::ActiveElseBlock = ActiveElseBlock
    EvaluationContext::InactiveElseBlock = InactiveElseBlock
  end

  module Common
    Template = Bosh::Template
  end
end

module BoshRsRenderer
  module_function

  def render(job_name, source, text, spec, encoder)
    filename = File.join(job_name, source)
    erb = ERB.new(text, trim_mode: '-')
    erb.filename = filename
    # A fresh context per file: a template mutating spec or properties affects only itself.
    context = Bosh::Template::EvaluationContext.new(Marshal.load(Marshal.dump(spec)), encoder)
    content = erb.result(context.get_binding)
    utf8 = content.dup.force_encoding(Encoding::UTF_8)
    unless utf8.valid_encoding?
      return failure(source, nil, 'rendered content is not valid UTF-8')
    end

    { 'content' => utf8 }
  # Exception, not StandardError: a template calling exit or raising ScriptError must fail
  # only itself, as in the director.
  rescue Exception => e # rubocop:disable Lint/RescueException
    failure(source, error_line(e, filename), e.to_s.dup.force_encoding(Encoding::UTF_8).scrub)
  end

  def failure(source, line, message)
    text = "Error filling in template '#{source}' (line #{line || '(unknown)'}: #{message})"
    { 'error' => { 'line' => line, 'message' => text } }
  end

  # The line of the template in the backtrace, as the director reads it; a SyntaxError has
  # no template frame, so its message ("<job>/<src>:N: syntax error") gives the line.
  def error_line(error, filename)
    frame = (error.backtrace || []).find { |l| l.include?(filename) }
    return frame.split(':')[1] if frame

    found = error.message.match(/#{Regexp.escape(filename)}:(\d+)/)
    found && found[1]
  end

  def job_spec(instance_spec, job)
    spec = instance_spec.dup
    spec['properties'] = job['properties'] || {}
    spec['links'] = job['links'] || {}
    spec['release'] = job['release']
    spec
  end

  def run(input, output)
    request = JSON.parse(input)
    encoder = Bosh::Template::DnsEncoder.new(request['dns'])
    instances = request.fetch('instances').map do |instance|
      jobs = instance.fetch('jobs').map do |job|
        spec = job_spec(instance.fetch('spec'), job)
        name = job.fetch('name')
        {
          'monit' => render(name, 'monit', job.fetch('monit'), spec, encoder),
          'templates' => job.fetch('templates').map do |t|
            render(name, t.fetch('source'), t.fetch('text'), spec, encoder)
          end,
        }
      end
      { 'jobs' => jobs }
    end
    output.write(JSON.generate({ 'pid' => Process.pid, 'instances' => instances }))
    output.flush
  end
end

Encoding.default_external = Encoding::UTF_8
Encoding.default_internal = nil
answer = $stdout.dup
answer.binmode
# Whatever templates print goes to stderr, never into the JSON answer.
$stdout.reopen($stderr)
BoshRsRenderer.run($stdin.read.force_encoding(Encoding::UTF_8), answer)
